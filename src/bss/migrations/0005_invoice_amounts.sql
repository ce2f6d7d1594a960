-- Invoices in currency units (issue #23, part A).
-- A bill line's amount is now rounded to the currency's minor unit by the invoice rounding
-- policy; the exact amount (micro-units, as rated) is kept beside it, so the rounding
-- difference of every line stays reportable. Bills made before keep their amounts: their
-- lines were exact, so amount_exact = amount.
ALTER TABLE bill_line ADD COLUMN amount_exact DECIMAL(18, 6);
UPDATE bill_line SET amount_exact = amount;

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
