-- rating-engine BSS schema, version 2: assurance. Alarms follow TMF642 / ITU-T X.733 (event
-- types and probable causes; X.736 for the security types), trouble tickets TMF621.
-- "One open alarm per (alarmed_object, alarm_type, probable_cause, specific_problem)" needs a
-- partial unique index, which DuckDB lacks: bss.alarms enforces it inside a transaction.

CREATE SEQUENCE seq_alarm START 1;
CREATE TABLE alarm (
    id                 BIGINT PRIMARY KEY DEFAULT nextval('seq_alarm'),
    alarmed_object     VARCHAR NOT NULL CHECK (length(alarmed_object) > 0),
    alarm_type         VARCHAR NOT NULL CHECK (alarm_type IN (
                         'communicationsAlarm', 'qualityOfServiceAlarm', 'processingErrorAlarm',
                         'equipmentAlarm', 'environmentalAlarm', 'integrityViolation',
                         'operationalViolation', 'physicalViolation',
                         'securityServiceOrMechanismViolation', 'timeDomainViolation')),
    probable_cause     VARCHAR NOT NULL CHECK (probable_cause IN (
                         'thresholdCrossed', 'congestion', 'bandwidthReduced',
                         'performanceDegraded', 'excessiveResponseTime', 'queueSizeExceeded',
                         'lossOfSignal', 'lossOfFrame', 'degradedSignal',
                         'communicationsProtocolError', 'communicationsSubsystemFailure',
                         'callEstablishmentError', 'remoteNodeTransmissionError',
                         'transmissionError', 'equipmentMalfunction', 'powerProblem',
                         'processorProblem', 'receiverFailure', 'transmitterFailure',
                         'storageCapacityProblem', 'softwareError', 'outOfMemory',
                         'configurationOrCustomizationError', 'corruptData',
                         'temperatureUnacceptable', 'denialOfService', 'intrusionDetection',
                         'unauthorizedAccessAttempt', 'other')),
    specific_problem   VARCHAR NOT NULL DEFAULT '',
    perceived_severity VARCHAR NOT NULL CHECK (perceived_severity IN (
                         'critical', 'major', 'minor', 'warning', 'indeterminate', 'cleared')),
    state              VARCHAR NOT NULL CHECK (state IN ('raised', 'updated', 'cleared')),
    ack_state          VARCHAR NOT NULL DEFAULT 'unacknowledged'
                       CHECK (ack_state IN ('unacknowledged', 'acknowledged')),
    ack_user           VARCHAR,
    ack_time           TIMESTAMPTZ,
    service_affecting  BOOLEAN NOT NULL DEFAULT false,
    raised_time        TIMESTAMPTZ NOT NULL,
    changed_time       TIMESTAMPTZ NOT NULL,
    cleared_time       TIMESTAMPTZ,
    occurrences        INTEGER NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    -- the detection rule that raised it; null for alarms raised by hand (never auto-cleared)
    detection_kind     VARCHAR,
    observed_value     DOUBLE,
    threshold_value    DOUBLE,
    direction          VARCHAR CHECK (direction IS NULL OR direction IN ('above', 'below')),
    window_start       TIMESTAMPTZ,
    window_end         TIMESTAMPTZ,
    details            VARCHAR NOT NULL DEFAULT '',
    CHECK ((state = 'cleared') = (perceived_severity = 'cleared')),
    CHECK ((state = 'cleared') = (cleared_time IS NOT NULL)),
    CHECK ((ack_state = 'acknowledged') = (ack_time IS NOT NULL)),
    CHECK (changed_time >= raised_time)
);

CREATE TABLE alarm_comment (
    alarm_id   BIGINT NOT NULL REFERENCES alarm (id),
    comment_no INTEGER NOT NULL CHECK (comment_no > 0),
    author     VARCHAR NOT NULL CHECK (length(author) > 0),
    text       VARCHAR NOT NULL CHECK (length(text) > 0),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (alarm_id, comment_no)
);

CREATE SEQUENCE seq_ticket START 1;
CREATE TABLE trouble_ticket (
    id            BIGINT PRIMARY KEY DEFAULT nextval('seq_ticket'),
    name          VARCHAR NOT NULL CHECK (length(name) > 0),
    description   VARCHAR NOT NULL DEFAULT '',
    severity      VARCHAR NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    priority      INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 4),
    ticket_type   VARCHAR NOT NULL DEFAULT 'networkFault'
                  CHECK (ticket_type IN ('networkFault', 'serviceProblem', 'customerComplaint',
                                         'securityIncident', 'other')),
    status        VARCHAR NOT NULL CHECK (status IN (
                    'acknowledged', 'inProgress', 'pending', 'held', 'resolved', 'closed',
                    'cancelled')),
    status_reason VARCHAR NOT NULL DEFAULT '',
    origin        VARCHAR NOT NULL CHECK (origin IN ('alarm', 'manual')),
    -- every linked alarm has cleared (derived by bss.tickets, kept for queries)
    resolvable    BOOLEAN NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    resolved_at   TIMESTAMPTZ,
    closed_at     TIMESTAMPTZ,
    CHECK (status NOT IN ('resolved', 'closed') OR resolved_at IS NOT NULL),
    CHECK ((status IN ('closed', 'cancelled')) = (closed_at IS NOT NULL))
);

CREATE TABLE ticket_alarm (
    ticket_id BIGINT NOT NULL REFERENCES trouble_ticket (id),
    alarm_id  BIGINT NOT NULL REFERENCES alarm (id),
    linked_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (ticket_id, alarm_id)
);

CREATE TABLE ticket_customer (
    ticket_id   BIGINT NOT NULL REFERENCES trouble_ticket (id),
    customer_id BIGINT NOT NULL REFERENCES customer (id),
    PRIMARY KEY (ticket_id, customer_id)
);

CREATE TABLE ticket_note (
    ticket_id BIGINT NOT NULL REFERENCES trouble_ticket (id),
    note_no   INTEGER NOT NULL CHECK (note_no > 0),
    author    VARCHAR NOT NULL CHECK (length(author) > 0),
    text      VARCHAR NOT NULL CHECK (length(text) > 0),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (ticket_id, note_no)
);
