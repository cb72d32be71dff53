-- withheld_labels: the binary truth (detected vs not) of the withheld annotations.
-- Grain: one row per experiment x structure with a known withheld call.
-- Inputs: withheld_annotations (the truth of stages the experts never annotated; only the
-- evaluation views read it, never fit or annotate). The same rule as the labels view: the
-- table macro labels_of of sql/labels.sql (NULL = all three calls unknown: left out).
create or replace view withheld_labels as
select * from labels_of('withheld_annotations')
