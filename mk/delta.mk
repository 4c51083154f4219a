# Page deltas and compression (issue 5): the zstd codec of COMPRESSED
# records, for the library and for the independent verifier (which also
# needs zlib). --no-as-needed because these libraries come before the
# verifier's source on its link line.
FT_LIBS += -lzstd
$(VERIFY): CFLAGS += -Wl,--no-as-needed -lz -lzstd
