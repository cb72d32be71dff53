-- 0010_model_layout: models that read part of the vector (structure features).
--
-- A model of a structure-feature run (feature sets `atlas.<what>`, `atlas.<what>+<global>`)
-- sees only its structure's own K columns of the atlas vector (and, for a combined set, the
-- whole global vector after it). Its `weights` are then [K weights on columns
-- local_start .. local_start + local_width - 1 | weights on the last len(weights) -
-- local_width columns of the run's vector]; both parts in the raw feature space with the
-- standardisation (and the global set's principal components) folded in, so a score is still
-- one dot product plus the intercept. NULL local_start (every global-feature model): the
-- weights span the whole vector, as before.
alter table models add column local_start integer;
alter table models add column local_width integer;
