"""Operations on the lake's tables: forgetting users (privacy), compaction and vacuum."""
