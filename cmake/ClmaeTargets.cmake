# How every clmae target is declared: one include root (the repository), the
# same warnings everywhere, and test suites discovered by GoogleTest.

# Warnings for every target of ours, set once so that all of them compile
# with the same flags (the precompiled LibTorch header is shared between
# targets only when their flags agree). Third-party headers come in as system
# headers and do not warn. Generated code opts out (proto/).
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Wall> $<$<COMPILE_LANGUAGE:CXX>:-Wextra>)
endif()

# clmae_add_library(NAME SOURCES file... [PUBLIC dep...] [PRIVATE dep...] [TORCH])
# A static library whose headers are included as "<folder>/<file>.h" from the
# repository root. TORCH: it includes LibTorch (the engine's flags and
# precompiled header).
function(clmae_add_library name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;PUBLIC;PRIVATE" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_PUBLIC} PRIVATE ${ARG_PRIVATE})
  if(ARG_TORCH)
    clmae_use_torch_pch(${name})
  endif()
endfunction()

# clmae_add_executable(NAME SOURCES file... [LIBS dep...] [TORCH])
function(clmae_add_executable name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS})
  if(ARG_TORCH)
    clmae_use_torch_pch(${name})
  endif()
endfunction()

# clmae_add_test_suite(NAME GLOBS pattern... LIBS dep... LABELS label...
#                      [DEFINITIONS d...] [DEPENDS target...] [TORCH])
# One GoogleTest executable from the *_test.cc files the GLOBS (relative to
# tests/) match, linked with the shared helpers of tests/testing/ and
# GoogleTest's main; every test case becomes a ctest case with LABELS.
function(clmae_add_test_suite name)
  cmake_parse_arguments(ARG "TORCH" "" "GLOBS;LIBS;LABELS;DEFINITIONS;DEPENDS" ${ARGN})
  set(patterns)
  foreach(glob IN LISTS ARG_GLOBS)
    list(APPEND patterns "${PROJECT_SOURCE_DIR}/tests/${glob}")
  endforeach()
  file(GLOB sources CONFIGURE_DEPENDS ${patterns})
  if(NOT sources)
    message(FATAL_ERROR "clmae_add_test_suite(${name}): no tests match ${ARG_GLOBS}")
  endif()
  add_executable(${name} ${sources})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} clmae_testing
                        GTest::gtest GTest::gmock GTest::gtest_main)
  if(ARG_DEFINITIONS)
    target_compile_definitions(${name} PRIVATE ${ARG_DEFINITIONS})
  endif()
  if(ARG_DEPENDS)
    add_dependencies(${name} ${ARG_DEPENDS})
  endif()
  # GCC 12 reports a false -Wrestrict in GoogleTest's printers of
  # std::vector<proto message> (GCC bug 105329), instantiated in our files.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${name} PRIVATE -Wno-restrict)
  endif()
  if(ARG_TORCH)
    clmae_use_torch_pch(${name})
  endif()
  gtest_discover_tests(${name} PROPERTIES LABELS "${ARG_LABELS}" DISCOVERY_TIMEOUT 60)
endfunction()
