-- Invoices a person reads (issue #23, part A): who buys and who sells. The bills' amounts
-- in currency units are 0005_invoice_amounts.sql.

-- The buyer on the invoice: postal address (lines separated by newlines) and VAT id.
ALTER TABLE billing_account ADD COLUMN address VARCHAR DEFAULT '';
ALTER TABLE billing_account ADD COLUMN vat_id VARCHAR DEFAULT '';

-- The workspace's invoice settings, in versions: the version in force on a bill's date
-- (the latest valid_from on or before it) gives the seller printed on it and the rounding
-- policy its billing run used. A change is a new version, so issued bills keep theirs.
CREATE TABLE invoice_settings (
    valid_from     TIMESTAMPTZ PRIMARY KEY,
    seller_name    VARCHAR NOT NULL CHECK (length(seller_name) > 0),
    seller_address VARCHAR NOT NULL DEFAULT '',
    seller_vat_id  VARCHAR NOT NULL DEFAULT '',
    seller_email   VARCHAR NOT NULL DEFAULT '',
    payment_details VARCHAR NOT NULL DEFAULT '',
    rounding       VARCHAR NOT NULL DEFAULT 'half-even'
                   CHECK (rounding IN ('half-even', 'half-up')),
    tax_basis      VARCHAR NOT NULL DEFAULT 'rate-group'
                   CHECK (tax_basis IN ('rate-group', 'line'))
);
