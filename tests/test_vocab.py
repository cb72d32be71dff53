"""The vocabulary module, the stages table and the device: one home each, and they agree."""

from __future__ import annotations

import pytest
import torch

from ishwh import vocab, warehouse
from ishwh.device import resolve_device, torch_threads
from ishwh.errors import InvalidInput


def test_stages_table_mirrors_vocab(db_path):
    with warehouse.connect(db_path, read_only=True) as con:
        rows = con.sql("select stage, stage_order, is_annotated from stages "
                       "order by stage_order").fetchall()
    assert [r[0] for r in rows] == list(vocab.STAGES)
    assert [r[1] for r in rows] == list(range(len(vocab.STAGES)))
    assert [r[0] for r in rows if r[2]] == list(vocab.ANNOTATED_STAGES)


def test_stage_helpers():
    assert vocab.sort_stages(["P4", "E11.5", "P28", "E18.5"]) == ["E11.5", "E18.5", "P4", "P28"]
    assert vocab.stage_order("E15.5") == 2
    with pytest.raises(InvalidInput, match="unknown stage 'E12'"):
        vocab.check_stage("E12")
    assert set(vocab.ANNOTATED_STAGES) | set(vocab.UNANNOTATED_STAGES) == set(vocab.STAGES)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InvalidInput, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInput, match="no CUDA GPU"):
            resolve_device("cuda")


def test_torch_threads_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
