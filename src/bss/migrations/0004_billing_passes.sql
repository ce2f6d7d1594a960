-- A billing run never stops on one account, and a billed period stays open for what was
-- missing (issue #26). Every run of a period is a pass: pass 1 is the regular run
-- (billing_run keeps its row), later passes bill the accounts still missing and the
-- products added since, on supplementary bills. An account whose bill cannot be made is
-- recorded as a billing exception with the reason; the others are billed as usual.

-- An account may now have a regular and supplementary bills for one period: the bill
-- table is rebuilt without UNIQUE (account_id, period) (DuckDB cannot drop a constraint),
-- with the tables that reference it, their rows kept as they are.
CREATE TEMP TABLE _bill AS SELECT * FROM bill;
CREATE TEMP TABLE _bill_line AS SELECT * FROM bill_line;
CREATE TEMP TABLE _billed_one_time AS SELECT * FROM billed_one_time;
DROP TABLE billed_one_time;
DROP TABLE bill_line;
DROP TABLE bill;

CREATE TABLE bill (
    bill_no         VARCHAR PRIMARY KEY,
    account_id      BIGINT NOT NULL REFERENCES billing_account (id),
    period          VARCHAR NOT NULL,
    period_start    TIMESTAMPTZ NOT NULL,
    period_end      TIMESTAMPTZ NOT NULL,
    bill_date       DATE NOT NULL,
    due_date        DATE NOT NULL,
    currency        VARCHAR NOT NULL,
    amount_excl_tax DECIMAL(18, 6) NOT NULL,
    tax_rate        DECIMAL(9, 6) NOT NULL,
    tax_amount      DECIMAL(18, 6) NOT NULL,
    amount_incl_tax DECIMAL(18, 6) NOT NULL,
    amount_due      DECIMAL(18, 6) NOT NULL,
    state           VARCHAR NOT NULL DEFAULT 'final' CHECK (state IN ('final')),
    -- 'supplementary': made by a later pass of a period already billed
    kind            VARCHAR NOT NULL DEFAULT 'regular' CHECK (kind IN ('regular', 'supplementary')),
    pass_no         INTEGER NOT NULL DEFAULT 1 CHECK (pass_no >= 1),
    CHECK (amount_incl_tax = amount_excl_tax + tax_amount),
    CHECK ((kind = 'regular') = (pass_no = 1))
);
INSERT INTO bill SELECT *, 'regular', 1 FROM _bill;

CREATE TABLE bill_line (
    bill_no     VARCHAR NOT NULL REFERENCES bill (bill_no),
    line_no     INTEGER NOT NULL CHECK (line_no > 0),
    line_type   VARCHAR NOT NULL CHECK (line_type IN ('recurring', 'oneTime', 'usage', 'credit')),
    product_id  BIGINT,
    description VARCHAR NOT NULL,
    quantity    BIGINT NOT NULL DEFAULT 1,
    unit        VARCHAR NOT NULL DEFAULT '',
    amount      DECIMAL(18, 6) NOT NULL,
    PRIMARY KEY (bill_no, line_no)
);
INSERT INTO bill_line SELECT * FROM _bill_line;

CREATE TABLE billed_one_time (
    product_id BIGINT NOT NULL REFERENCES product (id),
    price_id   VARCHAR NOT NULL REFERENCES product_offering_price (id),
    bill_no    VARCHAR NOT NULL REFERENCES bill (bill_no),
    PRIMARY KEY (product_id, price_id)
);
INSERT INTO billed_one_time SELECT * FROM _billed_one_time;
DROP TABLE _bill;
DROP TABLE _bill_line;
DROP TABLE _billed_one_time;

-- Every pass of every period; a pass's rated and suspense parts are named for it
-- (run-<period> for pass 1, run-<period>-s<N> after), so the rated parts of committed
-- passes are exactly what was billed.
CREATE TABLE billing_pass (
    period           VARCHAR NOT NULL,
    pass_no          INTEGER NOT NULL CHECK (pass_no >= 1),
    finished_at      TIMESTAMPTZ NOT NULL,
    bills            INTEGER NOT NULL,
    exceptions       INTEGER NOT NULL,
    rated_records    BIGINT NOT NULL,
    suspense_records BIGINT NOT NULL,
    PRIMARY KEY (period, pass_no)
);
INSERT INTO billing_pass
SELECT period, 1, finished_at, bills, 0, rated_records, suspense_records FROM billing_run;

-- Accounts a pass could not bill, and why (reason: a code, message: for people).
CREATE TABLE billing_exception (
    period     VARCHAR NOT NULL,
    pass_no    INTEGER NOT NULL,
    account_id BIGINT NOT NULL REFERENCES billing_account (id),
    reason     VARCHAR NOT NULL,
    message    VARCHAR NOT NULL,
    PRIMARY KEY (period, pass_no, account_id, reason)
);

-- The products whose charges a period's bills took account of: a product added later
-- is missing from it and is billed by the period's next pass.
CREATE TABLE billed_product (
    period     VARCHAR NOT NULL,
    product_id BIGINT NOT NULL,
    bill_no    VARCHAR NOT NULL,
    PRIMARY KEY (period, product_id)
);
-- Bills made before passes existed: their products are those on their lines.
INSERT INTO billed_product
SELECT b.period, l.product_id, min(b.bill_no)
FROM bill_line l JOIN bill b ON b.bill_no = l.bill_no
WHERE l.product_id IS NOT NULL
GROUP BY b.period, l.product_id;
