// The main() of every GoogleTest binary (tests/CMakeLists.txt, fg_add_test).
//
// NOTE: [skip exit code]
// CTest reports a test as skipped from its exit code (SKIP_RETURN_CODE), never from its output:
// gtest prints "[  SKIPPED ]" whenever one test skips, so matching that text would report a
// binary with one skip and one failure as skipped, and CTest would exit 0. This main returns
//   1                         when any test failed (whatever else skipped),
//   fgtest::kSkipExitCode     when nothing failed and at least one test skipped,
//   0                         when every test ran and passed.
// Pinned by tests/skip_pins.cpp (a failing-and-skipping binary registered WILL_FAIL).
#include <gtest/gtest.h>

#include "test_util.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int status = RUN_ALL_TESTS();
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  if (status != 0 || unit.failed_test_count() > 0 || unit.ad_hoc_test_result().Failed()) return 1;
  if (unit.skipped_test_count() > 0) return fgtest::kSkipExitCode;
  return 0;
}
