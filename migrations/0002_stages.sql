-- The stages of development as a table, so SQL joins it instead of repeating the list.
-- One row per stage; stage_order is developmental order (0 = E11.5); is_annotated says whether
-- the Allen experts annotated the stage (E11.5-E18.5). Mirrors ishwh/vocab.py (a test checks).
create table stages (
    stage        VARCHAR PRIMARY KEY,
    stage_order  INTEGER NOT NULL UNIQUE,
    is_annotated BOOLEAN NOT NULL
);
insert into stages values
    ('E11.5', 0, true), ('E13.5', 1, true), ('E15.5', 2, true), ('E18.5', 3, true),
    ('P4', 4, false), ('P14', 5, false), ('P28', 6, false), ('P56', 7, false);
