-- Re-rating of final periods after a tariff correction. A final bill is never rewritten:
-- the difference goes on the next bill as an adjustment, recorded here per usage record.

-- Which tariffs (compiled plan content hash) each final period's usage is priced with now.
CREATE TABLE rated_with (
    period         VARCHAR PRIMARY KEY,
    tariffs_sha256 VARCHAR NOT NULL
);

CREATE TABLE usage_adjustment (
    record_id      BIGINT NOT NULL,
    account_id     BIGINT NOT NULL,
    billed_period  VARCHAR NOT NULL,  -- the period whose bill carried the record
    adjusted_in    VARCHAR NOT NULL,  -- the period whose bill carries the adjustment
    delta          DECIMAL(18, 6) NOT NULL CHECK (delta <> 0),
    tariffs_sha256 VARCHAR NOT NULL
);
