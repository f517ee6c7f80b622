// The doctest runner of moejit_tests. tests/meson.build registers the executable twice:
// the unit tests (--test-suite-exclude=nvrtc) and the NVRTC compiles (--test-suite=nvrtc).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
