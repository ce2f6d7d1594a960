-- Accounts receivable, dunning and SLA credits (issue #23).
-- Money here is BIGINT in minor units of the account's currency (EUR cents, JPY yen, BHD
-- fils), never a float: the ledger is what was invoiced, paid and credited, after rounding.
-- Every such column is named `*_minor`: elsewhere (bill, bill_line, ...) `amount`,
-- `tax_amount` and the like are DECIMAL(18,6) in the currency's units, and one name must not
-- mean both.
-- No table here references `bill` by a foreign key on purpose: a later migration may rebuild
-- the bill table (as 0004 did), which DuckDB refuses while another table references it.

-- The journal: every money movement of an account is one balanced entry (its lines sum to
-- zero; bss.receivables.journal refuses any other). A balance is a sum over the lines,
-- never a stored number. Entries are never changed or deleted; corrections are new entries.
CREATE SEQUENCE seq_journal_entry START 1;
CREATE TABLE journal_entry (
    id          BIGINT PRIMARY KEY DEFAULT nextval('seq_journal_entry'),  -- posting order
    kind        VARCHAR NOT NULL CHECK (kind IN (
                  'bill', 'payment', 'credit_note', 'adjustment', 'write_off')),
    account_id  BIGINT NOT NULL REFERENCES billing_account (id),
    currency    VARCHAR NOT NULL CHECK (length(currency) = 3),
    entry_date  DATE NOT NULL,
    -- bill_no, the payment's reference, the credit note's number, the adjustment's id
    reference   VARCHAR NOT NULL CHECK (length(reference) > 0),
    description VARCHAR NOT NULL DEFAULT '',
    posted_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (kind, reference)
);

-- Ledger accounts: receivable (the billing account's debt), revenue, tax (VAT payable),
-- cash, credit_notes (sales returns), adjustments, bad_debt. Debits > 0, credits < 0.
-- No primary key: a billing pass posts three lines per bill in bulk (a million bills),
-- and the only writer (bss.receivables) numbers them.
CREATE TABLE journal_line (
    entry_id     BIGINT NOT NULL,
    line_no      INTEGER NOT NULL CHECK (line_no > 0),
    ledger       VARCHAR NOT NULL CHECK (ledger IN (
                   'receivable', 'revenue', 'tax', 'cash', 'credit_notes', 'adjustments',
                   'bad_debt')),
    amount_minor BIGINT NOT NULL
);

-- A credit note: money given back on an issued bill, which itself stays as it is.
CREATE TABLE credit_note (
    credit_no             VARCHAR PRIMARY KEY,
    bill_no               VARCHAR NOT NULL,
    account_id            BIGINT NOT NULL REFERENCES billing_account (id),
    issue_date            DATE NOT NULL,
    currency              VARCHAR NOT NULL,
    reason                VARCHAR NOT NULL CHECK (length(reason) > 0),
    amount_excl_tax_minor BIGINT NOT NULL CHECK (amount_excl_tax_minor >= 0),
    tax_minor             BIGINT NOT NULL CHECK (tax_minor >= 0),
    amount_incl_tax_minor BIGINT NOT NULL CHECK (amount_incl_tax_minor > 0),
    entry_id              BIGINT NOT NULL REFERENCES journal_entry (id),
    CHECK (amount_incl_tax_minor = amount_excl_tax_minor + tax_minor)
);

CREATE TABLE credit_note_line (
    credit_no    VARCHAR NOT NULL REFERENCES credit_note (credit_no),
    line_no      INTEGER NOT NULL CHECK (line_no > 0),
    bill_line_no INTEGER,  -- the bill line credited in full; null for a credit of an amount
    description  VARCHAR NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),  -- excluding tax
    PRIMARY KEY (credit_no, line_no)
);

-- What a bill says about the account beyond its own charges, fixed when it is issued:
-- the balance after the previous bill, the payments and the other movements (credit
-- notes, adjustments, write-offs) posted since, and the balance with this bill. Only
-- bills of accounts with earlier ledger entries have one (a first bill has nothing before).
CREATE TABLE bill_statement (
    bill_no                 VARCHAR PRIMARY KEY,
    previous_balance_minor  BIGINT NOT NULL,
    payments_received_minor BIGINT NOT NULL,
    other_credits_minor     BIGINT NOT NULL,
    balance_due_minor       BIGINT NOT NULL
);

-- Dunning: each change of an account's level (none, reminder, final_notice, suspended),
-- with what was overdue; a suspension names the order that suspended the products.
CREATE TABLE dunning_step (
    account_id    BIGINT NOT NULL REFERENCES billing_account (id),
    as_of         DATE NOT NULL,
    from_level    VARCHAR NOT NULL,
    to_level      VARCHAR NOT NULL CHECK (to_level IN (
                    'none', 'reminder', 'final_notice', 'suspended')),
    overdue_minor BIGINT NOT NULL,
    days_overdue  INTEGER NOT NULL,
    order_id      BIGINT,
    recorded_at   TIMESTAMPTZ NOT NULL  -- an account's level is its latest step
);

-- Order items may now suspend and resume a product (dunning; TMF622 modify of the product's
-- status). The table is rebuilt with its rows (DuckDB cannot alter a CHECK); nothing
-- references it.
CREATE TEMP TABLE _order_item AS SELECT * FROM product_order_item;
DROP TABLE product_order_item;
CREATE TABLE product_order_item (
    order_id    BIGINT NOT NULL REFERENCES product_order (id),
    item_no     INTEGER NOT NULL CHECK (item_no > 0),
    action      VARCHAR NOT NULL CHECK (action IN ('add', 'modify', 'delete', 'suspend',
                                                   'resume')),
    offering_id VARCHAR REFERENCES product_offering (id),
    product_id  BIGINT REFERENCES product (id),
    service_ids VARCHAR[] NOT NULL DEFAULT [],
    state       VARCHAR NOT NULL DEFAULT 'acknowledged',
    PRIMARY KEY (order_id, item_no),
    CHECK (action <> 'add' OR offering_id IS NOT NULL),
    CHECK (action = 'add' OR product_id IS NOT NULL)
);
INSERT INTO product_order_item SELECT * FROM _order_item;
DROP TABLE _order_item;

-- SLA of an offering: the monthly availability it promises and the credit tiers (a share
-- of the product's recurring fee of the period when availability falls below `below`).
CREATE TABLE offering_sla (
    offering_id         VARCHAR PRIMARY KEY REFERENCES product_offering (id),
    availability_target DECIMAL(9, 6) NOT NULL
                        CHECK (availability_target > 0 AND availability_target <= 100)
);
CREATE TABLE offering_sla_tier (
    offering_id VARCHAR NOT NULL REFERENCES product_offering (id),
    below       DECIMAL(9, 6) NOT NULL CHECK (below > 0 AND below <= 100),  -- percent
    credit      DECIMAL(9, 6) NOT NULL CHECK (credit > 0 AND credit <= 100),  -- percent
    PRIMARY KEY (offering_id, below)
);
