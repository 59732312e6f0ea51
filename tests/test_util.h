#pragma once
// Shared test helpers: message-checking assertions, seeded random tensors, poisoning.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "flatgather/error.h"

/// Expects `statement` to throw flatgather::Error whose message contains every one of the
/// given substrings.
#define EXPECT_THROW_MSG(statement, ...)                                              \
  do {                                                                                \
    bool fg_thrown_ = false;                                                          \
    try {                                                                             \
      statement;                                                                      \
    } catch (const flatgather::Error& e) {                                            \
      fg_thrown_ = true;                                                              \
      for (const char* fg_part_ : {__VA_ARGS__}) {                                    \
        EXPECT_NE(std::string(e.what()).find(fg_part_), std::string::npos)            \
            << "message \"" << e.what() << "\" lacks \"" << fg_part_ << "\"";         \
      }                                                                               \
    }                                                                                 \
    EXPECT_TRUE(fg_thrown_) << #statement " did not throw flatgather::Error";          \
  } while (false)
