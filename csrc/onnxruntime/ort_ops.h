// The ops of genrt's ORT custom-op library; each file adds its op(s) to the "genrt" domain.
#pragma once

#include "ort_common.h"

namespace genrt {
namespace ort {

void add_conv(Ort::CustomOpDomain& domain);
void add_conv_transpose(Ort::CustomOpDomain& domain);
void add_minibatch_discrimination(Ort::CustomOpDomain& domain);

}  // namespace ort
}  // namespace genrt
