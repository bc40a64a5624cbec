"""Benchmark reports: plain or gzip JSON, atomic, and the same bytes for the same report."""

import gzip
import json

import pytest

from kinema.reports import read_report, write_report

REPORT = {"overall": 0.5, "clips": [{"path": "a.mp4", "checks": [{"passed": True}]}] * 50}


@pytest.mark.parametrize("name", ["report.json", "report.json.gz"])
def test_round_trip(tmp_path, name):
    path = write_report(tmp_path / "sub" / name, REPORT)
    assert path == tmp_path / "sub" / name
    assert read_report(path) == REPORT
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary file left behind


def test_gz_is_compressed_and_reproducible(tmp_path):
    plain = write_report(tmp_path / "r.json", REPORT)
    packed = write_report(tmp_path / "r.json.gz", REPORT)
    assert json.loads(gzip.decompress(packed.read_bytes())) == REPORT  # what zcat shows
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert packed.stat().st_size * 10 < plain.stat().st_size
    first = packed.read_bytes()
    write_report(tmp_path / "r.json.gz", REPORT)
    assert packed.read_bytes() == first  # no timestamp in the gzip header


def test_bad_files_name_the_file(tmp_path):
    not_gzip = tmp_path / "r.json.gz"
    not_gzip.write_text(json.dumps(REPORT))
    with pytest.raises(ValueError, match=r"r\.json\.gz: not a gzip-compressed JSON report"):
        read_report(not_gzip)
    truncated = tmp_path / "t.json"
    truncated.write_text('{"overall": 0.5, "clips": [')
    with pytest.raises(ValueError, match=r"t\.json: not a JSON report"):
        read_report(truncated)
    a_list = tmp_path / "l.json"
    a_list.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        read_report(a_list)
