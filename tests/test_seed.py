from sqlalchemy import text

from tests.seed import EXPORT_MUID, IMPORT_MUID, published_points, seed_published


def test_seed_published_matches_raw_json(clean_db) -> None:  # type: ignore[no-untyped-def]
    seed_published(clean_db)
    with clean_db.connect() as connection:
        rows = dict(connection.execute(text("SELECT muid::text, count(*) FROM readings GROUP BY muid")).all())
    assert rows == {IMPORT_MUID: 2688, EXPORT_MUID: 2688}
    assert abs(sum(v for _, v in published_points(IMPORT_MUID)[1]) - 97.6082) < 1e-9
