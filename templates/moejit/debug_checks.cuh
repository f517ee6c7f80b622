// Bounds checks for debugging, compiled in only with -DMOEJIT_DEBUG (MOEJIT_DEBUG=1 in
// the environment): a violated check stops the kernel with a trap, so the launch fails
// with an error naming the kernel instead of reading or writing out of bounds. The
// checks cost registers and time; -DMOEJIT_DEBUG is a compile option and so part of the
// cache key, and a debug kernel never stands in for a release one.
#pragma once

#ifdef MOEJIT_DEBUG
#define MOEJIT_CHECK(condition) \
  do {                          \
    if (!(condition)) __trap(); \
  } while (0)
#else
#define MOEJIT_CHECK(condition) \
  do {                          \
  } while (0)
#endif
