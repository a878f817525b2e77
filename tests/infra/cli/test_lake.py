"""`lfp lake optimize` at 80 columns: the tile table in the table of lake tables, with its
files and size after, beside the source tables; a vacuum it held back is said under it.
Tables built with the lake's and the tile table's own writers; the run history on a real
redis-server."""

from __future__ import annotations

from batch_layer.tile_ops import table_size
from batch_layer.tiles import TILES_TABLE
from feature_core.settings import Settings
from infra.cli.tables import data_size
from tests.batch_layer.test_tile_ops import crowded_tile_table, shop_lake
from tests.infra.cli.terminal import assert_readable, header_of, lfp, row_of


def test_optimize_lists_the_tile_table_with_the_source_tables(redis_process, tmp_path, monkeypatch):
    url = f"redis://127.0.0.1:{redis_process.port}/0"
    env = {
        "LFP_REDIS_URL": url,
        "LFP_DATA_DIR": str(tmp_path),
        "LFP_FEATURE_REPO": "demo.feature_repo",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None, data_dir=tmp_path, redis_url=url)
    (source,) = shop_lake(settings)
    tiles = settings.table_uri(TILES_TABLE)
    crowded_tile_table(tiles)

    result = lfp("lake", "optimize")
    assert result.exit_code == 0, result.output
    out = result.output
    assert_readable(out)
    for column in ("table", "files", "size"):
        assert column in header_of(out), out
    source_name = source.rsplit("/", 1)[-1]
    for name, uri, files in ((source_name, source, "2 -> 1"), (TILES_TABLE, tiles, "6 -> 3")):
        row = row_of(out, name)
        size = table_size(uri)
        assert size is not None and files in row and data_size(size[1]) in row, out
    assert "(compacted)" in row_of(out, TILES_TABLE) or "--wide" in out
    assert "unreadable" not in out and "in progress" not in out

    # The run history unreachable: the tile table's full vacuum waits, and says so.
    redis_process.stop()
    again = lfp("lake", "optimize", "--table", TILES_TABLE)
    assert again.exit_code == 0, again.output
    assert_readable(again.output)
    assert "3 -> 3" in row_of(again.output, TILES_TABLE)
    assert source_name not in again.output.split("lake:")[0]
    assert f"{TILES_TABLE}: run history unreadable" in again.output
