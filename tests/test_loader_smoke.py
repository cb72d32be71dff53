import polars as pl

from ishwh import loader, warehouse


def test_load_is_idempotent_and_extends(db_path):
    genes = pl.DataFrame({"gene_id": [1, 2], "acronym": ["A", "B"], "name": ["a", "b"]})
    exps = pl.DataFrame({"experiment_id": [10], "gene_id": [1], "stage": ["E11.5"]})
    with warehouse.connect(db_path) as con:
        assert loader.load(con, loader.Batch(genes=genes, experiments=exps)) == {
            "genes": 2, "experiments": 1}
        assert loader.load(con, loader.Batch(genes=genes, experiments=exps)) == {
            "genes": 0, "experiments": 0}
        more = pl.DataFrame(
            {"experiment_id": [10, 11], "gene_id": [1, 2], "stage": ["E11.5", "P4"]})
        assert loader.load(con, loader.Batch(experiments=more))["experiments"] == 1
        assert con.execute("select count(*) from experiments").fetchall()[0][0] == 2
