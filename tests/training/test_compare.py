from training import compare


def test_table_has_a_row_per_technique_and_the_real_reference():
    run = {m: 0.5 for m in compare.METRICS} | {"train_seconds": 30.0}
    run |= {"real_coverage": 0.097, "real_confidence": 0.95, "real_frechet": 5.0, "real_copy_fraction": 0.002}
    md = compare.table({"plain": [run, run], "VBN": [run]})
    lines = md.splitlines()
    assert len(lines) == 5 and lines[2].startswith("| plain | `(none)` | 0.500 ± 0.000")
    assert lines[3].startswith("| VBN | `--vbn` |") and lines[4].startswith("| real digits | | 0.097")
