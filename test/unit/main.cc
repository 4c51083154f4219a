// The single main of ftsync's unit-test binary (Catch2 v2).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
