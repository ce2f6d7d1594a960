-- Invoices in currency units, and invoices a person reads (issue #23, part A).
-- A bill line's amount is now rounded to the currency's minor unit by the invoice rounding
-- policy; the exact amount (micro-units, as rated) is kept beside it, so the rounding
-- difference of every line stays reportable. Bills made before keep their amounts: their
-- lines were exact, so amount_exact = amount.
ALTER TABLE bill_line ADD COLUMN amount_exact DECIMAL(18, 6);
UPDATE bill_line SET amount_exact = amount;

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

-- Tax of a bill per rate, with the rate's name as it was when the bill was made
-- ("TVA 20 %"): taxable_amount is the sum of the rounded lines of that rate.
CREATE TABLE bill_tax (
    bill_no        VARCHAR NOT NULL,
    rate           DECIMAL(9, 6) NOT NULL,
    name           VARCHAR NOT NULL,
    taxable_amount DECIMAL(18, 6) NOT NULL,
    tax_amount     DECIMAL(18, 6) NOT NULL,
    PRIMARY KEY (bill_no, rate)
);
-- Bills made before: one rate each, named by their account's jurisdiction.
INSERT INTO bill_tax
SELECT b.bill_no, b.tax_rate, t.name, b.amount_excl_tax, b.tax_amount
FROM bill b JOIN billing_account a ON a.id = b.account_id
JOIN tax_rate t ON t.jurisdiction = a.tax_jurisdiction;
