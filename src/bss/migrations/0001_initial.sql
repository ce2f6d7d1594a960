-- rating-engine BSS schema, version 1. Money is DECIMAL(18,6): micro-units, never FLOAT/DOUBLE.
-- Names follow the TM Forum Open APIs: TMF629 customer, TMF666 billing account, TMF620 catalog,
-- TMF622 product order, TMF637 product inventory, TMF678 customer bill.

CREATE SEQUENCE seq_customer START 1;
CREATE TABLE customer (
    id           BIGINT PRIMARY KEY DEFAULT nextval('seq_customer'),
    external_id  VARCHAR NOT NULL UNIQUE,
    name         VARCHAR NOT NULL CHECK (length(name) > 0),
    status       VARCHAR NOT NULL DEFAULT 'active'
                 CHECK (status IN ('active', 'suspended', 'closed')),
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE tax_rate (
    jurisdiction VARCHAR PRIMARY KEY,
    name         VARCHAR NOT NULL,
    rate         DECIMAL(9, 6) NOT NULL CHECK (rate >= 0 AND rate < 1)
);

CREATE SEQUENCE seq_account START 1;
CREATE TABLE billing_account (
    id               BIGINT PRIMARY KEY DEFAULT nextval('seq_account'),
    external_id      VARCHAR NOT NULL UNIQUE,
    customer_id      BIGINT NOT NULL REFERENCES customer (id),
    name             VARCHAR NOT NULL,
    currency         VARCHAR NOT NULL CHECK (length(currency) = 3 AND upper(currency) = currency),
    bill_cycle       VARCHAR NOT NULL DEFAULT 'monthly' CHECK (bill_cycle IN ('monthly')),
    payment_terms_days INTEGER NOT NULL DEFAULT 14 CHECK (payment_terms_days BETWEEN 0 AND 120),
    tax_jurisdiction VARCHAR NOT NULL REFERENCES tax_rate (jurisdiction),
    status           VARCHAR NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'suspended', 'closed')),
    created_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE product_specification (
    id          VARCHAR PRIMARY KEY,
    name        VARCHAR NOT NULL,
    description VARCHAR NOT NULL DEFAULT ''
);

CREATE TABLE product_offering (
    id               VARCHAR PRIMARY KEY,
    specification_id VARCHAR NOT NULL REFERENCES product_specification (id),
    name             VARCHAR NOT NULL,
    lifecycle_status VARCHAR NOT NULL DEFAULT 'active'
                     CHECK (lifecycle_status IN ('inDesign', 'active', 'retired')),
    valid_from       TIMESTAMPTZ NOT NULL,
    valid_to         TIMESTAMPTZ,
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);

CREATE TABLE product_offering_price (
    id          VARCHAR PRIMARY KEY,
    offering_id VARCHAR NOT NULL REFERENCES product_offering (id),
    name        VARCHAR NOT NULL,
    price_type  VARCHAR NOT NULL CHECK (price_type IN ('oneTime', 'recurring', 'usage', 'discount')),
    amount      DECIMAL(18, 6) CHECK (amount IS NULL OR amount >= 0),
    -- discounts: a fraction (0.10 = 10 %) of the offering's recurring charges
    percentage  DECIMAL(9, 6) CHECK (percentage IS NULL OR (percentage > 0 AND percentage <= 1)),
    currency    VARCHAR CHECK (currency IS NULL OR length(currency) = 3),
    recurring_period VARCHAR CHECK (recurring_period IS NULL OR recurring_period = 'month'),
    tariff_id   VARCHAR,
    valid_from  TIMESTAMPTZ NOT NULL,
    valid_to    TIMESTAMPTZ,
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    CHECK (price_type <> 'usage' OR tariff_id IS NOT NULL),
    CHECK (price_type NOT IN ('oneTime', 'recurring') OR (amount IS NOT NULL AND currency IS NOT NULL)),
    CHECK (price_type <> 'recurring' OR recurring_period IS NOT NULL),
    CHECK (price_type <> 'discount' OR percentage IS NOT NULL)
);

CREATE SEQUENCE seq_order START 1;
CREATE TABLE product_order (
    id           BIGINT PRIMARY KEY DEFAULT nextval('seq_order'),
    external_id  VARCHAR NOT NULL UNIQUE,
    account_id   BIGINT NOT NULL REFERENCES billing_account (id),
    state        VARCHAR NOT NULL CHECK (state IN (
                   'acknowledged', 'rejected', 'pending', 'held', 'inProgress', 'cancelled',
                   'completed', 'failed', 'partial', 'assessingCancellation',
                   'pendingCancellation')),
    requested_start TIMESTAMPTZ NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ
);

CREATE SEQUENCE seq_product START 1;
CREATE TABLE product (
    id               BIGINT PRIMARY KEY DEFAULT nextval('seq_product'),
    account_id       BIGINT NOT NULL REFERENCES billing_account (id),
    offering_id      VARCHAR NOT NULL REFERENCES product_offering (id),
    status           VARCHAR NOT NULL CHECK (status IN ('active', 'suspended', 'terminated')),
    start_date       TIMESTAMPTZ NOT NULL,
    termination_date TIMESTAMPTZ,
    CHECK (termination_date IS NULL OR termination_date >= start_date)
);

CREATE TABLE product_order_item (
    order_id    BIGINT NOT NULL REFERENCES product_order (id),
    item_no     INTEGER NOT NULL CHECK (item_no > 0),
    action      VARCHAR NOT NULL CHECK (action IN ('add', 'modify', 'delete')),
    offering_id VARCHAR REFERENCES product_offering (id),
    product_id  BIGINT REFERENCES product (id),
    -- service identifiers as 'msisdn:4915112345678', 'imsi:26201...', 'ip:192.0.2.0/28'
    service_ids VARCHAR[] NOT NULL DEFAULT [],
    state       VARCHAR NOT NULL DEFAULT 'acknowledged',
    PRIMARY KEY (order_id, item_no),
    CHECK (action <> 'add' OR offering_id IS NOT NULL),
    CHECK (action = 'add' OR product_id IS NOT NULL)
);

CREATE TABLE service_identifier (
    product_id  BIGINT NOT NULL REFERENCES product (id),
    key_type    VARCHAR NOT NULL CHECK (key_type IN ('msisdn', 'imsi', 'ip')),
    key         VARCHAR NOT NULL,
    active_from TIMESTAMPTZ NOT NULL,
    active_to   TIMESTAMPTZ,
    PRIMARY KEY (product_id, key_type, key, active_from)
);

CREATE SEQUENCE seq_history START 1;
CREATE TABLE state_history (
    id         BIGINT PRIMARY KEY DEFAULT nextval('seq_history'),
    entity     VARCHAR NOT NULL,
    entity_id  VARCHAR NOT NULL,
    from_state VARCHAR,
    to_state   VARCHAR NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    reason     VARCHAR NOT NULL DEFAULT ''
);

CREATE TABLE billing_run (
    period      VARCHAR PRIMARY KEY CHECK (regexp_matches(period, '^[0-9]{4}-[0-9]{2}$')),
    finished_at TIMESTAMPTZ NOT NULL,
    bills       INTEGER NOT NULL,
    rated_records BIGINT NOT NULL,
    suspense_records BIGINT NOT NULL,
    bills_sha256 VARCHAR NOT NULL
);

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
    UNIQUE (account_id, period),
    CHECK (amount_incl_tax = amount_excl_tax + tax_amount)
);

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

-- The billed-usage ledger: which usage record went on which bill. A record is billed at
-- most once: billing rates only records absent from here and refuses a run whose rated
-- records repeat an id. No primary key on purpose: maintaining one costs ~10x the insert
-- at 10M records per run, and the run's own checks already guarantee uniqueness.
CREATE TABLE billed_usage (
    record_id  BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    period     VARCHAR NOT NULL,
    cost       DECIMAL(18, 6) NOT NULL
);

-- One-time charges are billed once per product and price.
CREATE TABLE billed_one_time (
    product_id BIGINT NOT NULL REFERENCES product (id),
    price_id   VARCHAR NOT NULL REFERENCES product_offering_price (id),
    bill_no    VARCHAR NOT NULL REFERENCES bill (bill_no),
    PRIMARY KEY (product_id, price_id)
);
