//! Being written: ClickHouse source.
