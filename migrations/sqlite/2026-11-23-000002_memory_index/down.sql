DROP TABLE memory_index;
