#pragma once

// AdamW for one network with the reference's parameter groups (docs/method.md §5).

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace clmae {

struct OptimOptions {
  double weight_decay = 0.05;
  double beta1 = 0.9;
  double beta2 = 0.95;
  // The reference decays the 1 x 1 x D class / mask tokens (timm's
  // add_weight_decay with an empty skip list); false exempts them too.
  bool decay_tokens = true;
};

// Whether parameter `name` of shape `sizes` is weight-decayed: not biases,
// norms or other 1-D parameters; tokens per `decay_tokens`.
bool IsDecayed(const std::string& name, const torch::Tensor& param, bool decay_tokens);

// AdamW over `module`'s trainable parameters in two groups: group 0 decayed,
// group 1 not. The lr starts at 0; the trainer sets it every iteration.
std::unique_ptr<torch::optim::AdamW> MakeAdamW(torch::nn::Module& module,
                                               const OptimOptions& options);

// Sets the lr of every group.
void SetLearningRate(torch::optim::Optimizer& optimizer, double lr);

// AdamW steps of one optimizer (from MakeAdamW) that never wait for the
// device: PyTorch's fused multi-tensor AdamW kernel (at::_fused_adamw_, on
// CUDA and on the CPU) on the same state LibTorch's AdamW keeps, so
// checkpoints are the same either way. Each parameter's step count lives on
// the host (LibTorch's state, saved in checkpoints) and is mirrored on the
// device, where the kernel reads it; the mirror is rebuilt whenever the host
// count moves without it (a checkpoint was loaded). Not thread-safe; the
// optimizer must outlive it.
class AdamWStepper {
 public:
  explicit AdamWStepper(torch::optim::AdamW* optimizer) : optimizer_(optimizer) {}

  // One step over the parameters that have gradients. `found_inf` (optional,
  // a float scalar on the parameters' device): where it is non-zero the
  // kernel leaves parameters and moments untouched, so a non-finite step is
  // refused without the host reading anything. The step counts advance
  // either way (the caller stops training on a refused step). The kernel
  // reads each group's lr from a device tensor: `refresh_lr` first copies the
  // groups' current lr there (RefreshLr); inside a CUDA graph capture pass
  // false, so the graph reads the tensor that RefreshLr updates before each
  // replay.
  void Step(const torch::Tensor& found_inf = {}, bool refresh_lr = true);

  // Writes each group's lr (from its options) into the device tensor the
  // kernel reads. A fill on the device, no host synchronisation.
  void RefreshLr();

  // A replayed CUDA graph ran the captured Step again: advances the host
  // step counts of the parameters that Step last stepped, as Step would have.
  void AdvanceHostCounts();

 private:
  struct Mirror {
    int64_t host_step = -1;
    torch::Tensor device_step;  // float32 scalar on the parameter's device
  };
  torch::optim::AdamW* optimizer_;
  std::unordered_map<const void*, Mirror> mirrors_;
  std::vector<torch::Tensor> lr_;            // per group: float32 scalar on the device
  std::vector<torch::Tensor> last_stepped_;  // the parameters of the last Step
};

// Global L2 norm of the gradients of `params` (those that have one), as a
// float32 scalar on their device (undefined when none has a gradient); when
// `max_norm` > 0 scales them by min(1, max_norm / (norm + 1e-6)) on the
// device, as torch.nn.utils.clip_grad_norm_ does. No host synchronisation.
torch::Tensor ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace clmae
