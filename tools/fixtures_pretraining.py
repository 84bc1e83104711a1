"""Dev-only: the pretraining fixture, tests/fixtures/pretraining/: a tiny TFHubertForPreTraining checkpoint
and its loss, logits and gradients computed by an implementation independent of hubert_tf.

The independent implementation is fairseq's HuBERT objective written in torch from fairseq's own source
(`fairseq/models/hubert/hubert.py`: `HubertModel.forward`, `compute_pred`, `compute_nce`,
`forward_features` with `GradMultiply`; `fairseq/criterions/hubert_criterion.py`: `HubertCriterion.forward`
and `compute_correct`), on top of the transformers `HubertModel` body (the reference of the rest of the
suite) with fairseq's pretraining head: `final_proj` (Linear hidden -> final_dim) and `label_embs_concat`
([num_clusters, final_dim]).

What is fairseq's and what is not:
- fairseq's: logits = cosine_similarity(final_proj(x), [positive, every cluster]) / logit_temp with the
  positive's duplicate among the negatives set to -inf, target 0; cross-entropy summed over the masked
  (and the unmasked) valid frames; loss = w_m * L_m + w_u * L_u + feature_pen_weight * features_pen *
  sample_size, reported divided by sample_size (the number of frames of the non-zero weights), as fairseq's
  logging does (`loss / sample_size`); features_pen = features.float().pow(2).mean() over the padded batch,
  after GradMultiply(feature_grad_mult).
- transformers': the body (conv features, feature projection, `masked_spec_embed` at the given
  `mask_time_indices`, the encoder), the frame padding mask from the conv length formula (fairseq's own
  `forward_padding_mask` reshapes the sample mask instead; hubert_tf documents that it follows the
  formula), and one label per frame (no 100 Hz downsampling, no trimming: labels have exactly `frames`
  entries).

Needs torch, transformers>=5 and safetensors (never the test suite):

    /work/venv-ref/bin/python tools/make_fixtures.py pretraining
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures")
OUT = os.path.join(FIXTURES, "pretraining")
SEED = 400

# The body: base-style (group norm, post-LN encoder), the layout HuBERT base is pretrained with.
BODY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=12,
    conv_dim=(16, 24, 32), conv_kernel=(10, 5, 4), conv_stride=(5, 4, 4),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
    final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.05, feat_extract_norm="group", do_stable_layer_norm=False,
)
# The task (hubert_tf reads these extra config keys; see hubert_tf/modeling/pretraining.py). Non-default
# weights so that every term of the loss counts: unmasked frames at 0.5, the gradient multiplier 0.1.
TASK = dict(num_clusters=7, final_dim=16, logit_temp=0.1, pred_masked_weight=1.0, pred_nomask_weight=0.5,
            feature_pen_weight=10.0, feature_grad_mult=0.1)
LENGTHS = (4000, 2650)  # samples of the padded batch


class GradMultiply(torch.autograd.Function):
    """fairseq.modules.GradMultiply: identity forward, gradient times `scale`."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.new(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def compute_nce(x, pos, negs, logit_temp):
    """fairseq HubertModel.compute_nce: [S, D], [S, D], [K, S, D] -> logits [S, 1 + K]."""
    neg_is_pos = (pos == negs).all(-1)
    pos = pos.unsqueeze(0)
    targets = torch.cat([pos, negs], dim=0)
    logits = torch.cosine_similarity(x.float(), targets.float(), dim=-1).type_as(x)
    logits /= logit_temp
    if neg_is_pos.any():
        logits[1:][neg_is_pos] = float("-inf")
    return logits.transpose(0, 1)


def compute_pred(proj_x, target, label_embs, logit_temp):
    """fairseq HubertModel.forward's compute_pred (no target_glu)."""
    y = torch.index_select(label_embs, 0, target.long())
    negs = label_embs.unsqueeze(1).expand(-1, proj_x.size(0), -1)
    return compute_nce(proj_x, y, negs, logit_temp)


def compute_correct(logits):
    """fairseq HubertCriterion's compute_correct: (argmax == 0, not also argmin == 0) count, frames."""
    if logits.numel() == 0:
        return 0, 0
    best = logits.argmax(-1) == 0
    worst = logits.argmin(-1) == 0
    return int(best.long().sum().item() - (best & worst).long().sum().item()), int(best.numel())


def hubert_loss(body, final_proj, label_embs_concat, input_values, attention_mask, labels, mask_time_indices,
                task):
    """fairseq's HuBERT forward + criterion on a transformers HubertModel body.

    Returns a dict: loss (normalised by sample_size), loss_sum, sample_size, loss_m, loss_u, features_pen,
    logit_m [S_m, 1 + K], logit_u [S_u, 1 + K], masked / unmasked [batch, frames] bool, correct/count.
    """
    captured = {}

    def grad_multiply(module, args, output):  # fairseq forward_features
        output = GradMultiply.apply(output, task["feature_grad_mult"])
        captured["features"] = output
        return output

    hook = body.feature_extractor.register_forward_hook(grad_multiply)
    try:
        x = body(input_values, attention_mask=attention_mask, mask_time_indices=mask_time_indices).last_hidden_state
    finally:
        hook.remove()
    features = captured["features"]  # [batch, channels, frames]
    features_pen = features.float().pow(2).mean()
    frames = x.shape[1]
    padding_mask = ~body._get_feature_vector_attention_mask(frames, attention_mask).bool()
    masked_indices = torch.logical_and(~padding_mask, mask_time_indices)
    nomask_indices = torch.logical_and(~padding_mask, ~mask_time_indices)
    logit_m = compute_pred(final_proj(x[masked_indices]), labels[masked_indices], label_embs_concat,
                           task["logit_temp"])
    logit_u = compute_pred(final_proj(x[nomask_indices]), labels[nomask_indices], label_embs_concat,
                           task["logit_temp"])
    # HubertCriterion.forward, reduce=True
    loss = 0.0
    sample_size = 0
    loss_m = F.cross_entropy(logit_m.float(), logit_m.new_zeros(logit_m.size(0), dtype=torch.long), reduction="sum")
    loss_u = F.cross_entropy(logit_u.float(), logit_u.new_zeros(logit_u.size(0), dtype=torch.long), reduction="sum")
    if task["pred_masked_weight"] > 0:
        loss += task["pred_masked_weight"] * loss_m
        sample_size += logit_m.size(0)
    if task["pred_nomask_weight"] > 0:
        loss += task["pred_nomask_weight"] * loss_u
        sample_size += logit_u.size(0)
    coef = task["feature_pen_weight"]
    if coef != 0:
        loss += coef * features_pen.float() * sample_size
    correct_m, count_m = compute_correct(logit_m)
    correct_u, count_u = compute_correct(logit_u)
    return dict(loss=loss / sample_size, loss_sum=loss, sample_size=sample_size, loss_m=loss_m, loss_u=loss_u,
                features_pen=features_pen, logit_m=logit_m, logit_u=logit_u, masked=masked_indices,
                unmasked=nomask_indices, correct_m=correct_m, count_m=count_m, correct_u=correct_u,
                count_u=count_u)


def main():
    import make_fixtures  # same folder: randomize, make_batch

    torch.manual_seed(SEED)
    config = transformers.HubertConfig(**BODY)
    config._attn_implementation = "eager"
    body = transformers.HubertModel(config)
    make_fixtures.randomize(body, SEED)
    g = torch.Generator().manual_seed(SEED + 1)
    final_proj = torch.nn.Linear(config.hidden_size, TASK["final_dim"])
    label_embs_concat = torch.nn.Parameter(torch.rand((TASK["num_clusters"], TASK["final_dim"]), generator=g))
    with torch.no_grad():
        final_proj.weight.copy_(1.5 * torch.randn(final_proj.weight.shape, generator=g) / config.hidden_size ** 0.5)
        final_proj.bias.copy_(0.5 * torch.randn(final_proj.bias.shape, generator=g))

    x, attention_mask = make_fixtures.make_batch(LENGTHS, SEED + 2)
    frames = int(body._get_feat_extract_output_lengths(torch.tensor(max(LENGTHS))))
    rng = np.random.default_rng(SEED + 3)
    mask_time_indices = rng.random((len(LENGTHS), frames)) < 0.5
    labels = rng.integers(0, TASK["num_clusters"], (len(LENGTHS), frames)).astype(np.int64)
    # Gradients in training mode (all dropout / layerdrop 0; the explicit mask means none is drawn).
    body.train()
    result = hubert_loss(body, final_proj, label_embs_concat, torch.from_numpy(x), torch.from_numpy(attention_mask),
                         torch.from_numpy(labels), torch.from_numpy(mask_time_indices), TASK)
    result["loss"].backward()

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    state = {f"hubert.{k}": v.detach().clone().contiguous() for k, v in body.state_dict().items()}
    state.update({"final_proj.weight": final_proj.weight.detach().clone(),
                  "final_proj.bias": final_proj.bias.detach().clone(),
                  "label_embs_concat": label_embs_concat.detach().clone()})
    save_file(state, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(OUT, "model.safetensors"), 0o644)  # save_file writes 0600
    config_dict = {**config.to_dict(), **TASK, "architectures": ["HubertForPreTraining"]}
    config_dict.pop("_attn_implementation", None)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2, sort_keys=True)

    arrays = {
        "input_values": x, "attention_mask": attention_mask, "labels": labels, "mask_time_indices": mask_time_indices,
        "masked": result["masked"].numpy(), "unmasked": result["unmasked"].numpy(),
        "loss": np.float64(result["loss"].item()), "loss_sum": np.float64(result["loss_sum"].item()),
        "sample_size": np.int64(result["sample_size"]), "loss_m": np.float64(result["loss_m"].item()),
        "loss_u": np.float64(result["loss_u"].item()), "features_pen": np.float64(result["features_pen"].item()),
        "logit_m": result["logit_m"].detach().numpy(), "logit_u": result["logit_u"].detach().numpy(),
        "correct_m": np.int64(result["correct_m"]), "count_m": np.int64(result["count_m"]),
        "correct_u": np.int64(result["correct_u"]), "count_u": np.int64(result["count_u"]),
    }
    for name, p in [*(("hubert." + n, p) for n, p in body.named_parameters()),
                    ("final_proj.weight", final_proj.weight), ("final_proj.bias", final_proj.bias),
                    ("label_embs_concat", label_embs_concat)]:
        if p.grad is not None:
            arrays[f"grad/{name}"] = p.grad.numpy().copy()
    np.savez_compressed(os.path.join(OUT, "reference.npz"), **arrays)
    with open(os.path.join(OUT, "SOURCE.json"), "w") as f:
        json.dump({"script": "tools/fixtures_pretraining.py", "reference": "fairseq HuBERT loss (torch, "
                   "from fairseq/models/hubert/hubert.py and fairseq/criterions/hubert_criterion.py) on a "
                   "transformers HubertModel body", "mode": "train(), all dropout and layerdrop 0, explicit "
                   "mask_time_indices", "transformers": transformers.__version__, "torch": torch.__version__,
                   "seed": SEED, "task": TASK, "lengths": list(LENGTHS)}, f, indent=2)
    print(f"pretraining -> {OUT}: loss {result['loss'].item():.6f} (masked {result['count_m']}, "
          f"unmasked {result['count_u']} frames, features_pen {result['features_pen'].item():.4f})")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
