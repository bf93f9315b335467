// Clang's thread-safety annotations (-Wthread-safety): which mutex guards
// which member, which functions must be called with it held. They are
// checked at compile time by the clang build (CMakeLists.txt turns the
// warnings into errors there) and expand to nothing on other compilers.
//
// The names are LevelDB's and Abseil's; see clang's ThreadSafetyAnalysis
// documentation for their meaning. The lock type they apply to is Mutex
// (common/mutex.h): std::mutex is not annotated in libstdc++.
#pragma once

#if defined(__clang__)
#define MUSCLE_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define MUSCLE_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) MUSCLE_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY MUSCLE_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) MUSCLE_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) MUSCLE_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) MUSCLE_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) MUSCLE_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) MUSCLE_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) MUSCLE_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) MUSCLE_THREAD_ANNOTATION(assert_capability(x))
#define NO_THREAD_SAFETY_ANALYSIS MUSCLE_THREAD_ANNOTATION(no_thread_safety_analysis)
