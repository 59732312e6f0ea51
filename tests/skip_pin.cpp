// Pins the skip exit code (NOTE: [skip exit code] in tests/gtest_main.cpp) and the
// FLATGATHER_REQUIRE_GPU switch: this binary always has a skipping test, and a failing one
// when FG_PIN=fail. tests/CMakeLists.txt runs it and checks each exit code.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "test_util.h"

namespace {

TEST(SkipPin, Skips) {
  GTEST_SKIP() << "pin: this test always skips";
}

TEST(SkipPin, SkipsForWantOfAGpu) {
  FG_SKIP_WITHOUT_GPU("pin: no GPU is ever looked for here");
}

TEST(SkipPin, FailsWhenAsked) {
  const char* mode = std::getenv("FG_PIN");
  if (mode != nullptr && std::string(mode) == "fail") ADD_FAILURE() << "pin: deliberate failure";
}

}  // namespace
