#pragma once
/// \file flatgather.h
/// The core API in one include (no LibTorch): dtypes and casts, tensor descriptors, layouts
/// and manifests, plans. The LibTorch adapter is `flatgather/torch.h`.
///
///   #include <flatgather/flatgather.h>
///   auto plan = flatgather::Plan::build(descriptors);

#include "flatgather/config.h"
#include "flatgather/dtype.h"
#include "flatgather/error.h"
#include "flatgather/layout.h"
#include "flatgather/plan.h"
#include "flatgather/tensor_ref.h"
