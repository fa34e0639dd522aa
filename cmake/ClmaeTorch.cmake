# Finds LibTorch. Order: Torch_DIR / CMAKE_PREFIX_PATH if given, else the
# torch package of $CLMAE_PYTHON, else of the project venv (.venv), else of
# python3 on PATH (the GPU machine's PyTorch).
if(NOT Torch_DIR)
  set(_clmae_pythons "$ENV{CLMAE_PYTHON}" "${CMAKE_SOURCE_DIR}/.venv/bin/python")
  find_program(_clmae_sys_python python3)
  list(APPEND _clmae_pythons "${_clmae_sys_python}")
  foreach(_py IN LISTS _clmae_pythons)
    if(_py AND EXISTS "${_py}")
      execute_process(
        COMMAND "${_py}" -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
        OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
        RESULT_VARIABLE _rc ERROR_QUIET)
      if(_rc EQUAL 0 AND _torch_prefix)
        list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
        message(STATUS "LibTorch from ${_py}: ${_torch_prefix}")
        execute_process(COMMAND "${_py}" -c "import sys; print(sys.prefix)"
                        OUTPUT_VARIABLE _clmae_py_prefix OUTPUT_STRIP_TRAILING_WHITESPACE)
        break()
      endif()
    endif()
  endforeach()
endif()
# The CUDA wheel's TorchConfig wants a CUDA toolkit. scripts/install-deps.sh
# assembles one in the venv (<venv>/cuda) from NVIDIA's PyPI packages pinned in
# deps.lock, so no system toolkit is needed; it is used unless the caller
# chose a toolkit (CUDA_TOOLKIT_ROOT_DIR or CMAKE_CUDA_COMPILER).
if(_clmae_py_prefix AND EXISTS "${_clmae_py_prefix}/cuda/bin/nvcc"
   AND NOT DEFINED CUDA_TOOLKIT_ROOT_DIR AND NOT DEFINED CMAKE_CUDA_COMPILER)
  set(CUDA_TOOLKIT_ROOT_DIR "${_clmae_py_prefix}/cuda" CACHE PATH "CUDA toolkit (the venv's)")
  set(CMAKE_CUDA_COMPILER "${_clmae_py_prefix}/cuda/bin/nvcc" CACHE FILEPATH "nvcc (the venv's)")
  set(CUDAToolkit_ROOT "${_clmae_py_prefix}/cuda")
  message(STATUS "CUDA toolkit from the venv: ${CUDA_TOOLKIT_ROOT_DIR}")
endif()
# Its CUDA architectures are chosen for the machines we run on (Hopper) unless
# the caller sets them.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(ENV{TORCH_CUDA_ARCH_LIST} "9.0")
endif()
find_package(Torch REQUIRED)
# The wheel's libtorch.so exports its own copy of std::filesystem (built with
# another toolchain), and std::filesystem::remove_all from it crashes when the
# dynamic linker binds our calls there. Linking libstdc++ ahead of LibTorch
# puts it first in the search order, so the toolchain's own copy is used.
set(TORCH_LIBRARIES stdc++ ${TORCH_LIBRARIES})
message(STATUS "LibTorch ${Torch_VERSION}; libraries: ${TORCH_LIBRARIES}")
