// The torch headers nearly every source includes, precompiled once per build and
// force-included ahead of each source (setup.py when the compiler is GCC, CMakeLists.txt's
// target_precompile_headers): parsing them is ~7 s of a file's ~12 s.
// Each source still includes what it uses and builds the same without this
// (TORCHFUNC_NO_PCH=1 python setup.py build_ext checks that).
// Only torch headers that every source sees the same way: no project header (an edit
// would rebuild every file) and no <ATen/ATen.h> (every operator).
#include <ATen/Context.h>
#include <ATen/DeviceGuard.h>
#include <ATen/TensorUtils.h>
#include <ATen/TracerMode.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Reduction.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>
