//! Being written: transformation.
