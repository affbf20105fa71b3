//! Pure COW ("MOOO") format: header v1/v2/v3 parse and serialize, bitmap math. No I/O.
