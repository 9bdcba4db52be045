"""The seed's ViT classifier: a timm ViT, an extra LayerNorm and a linear head.

The attribute names are part of the checkpoint format: the published seed `final_model.pth` has keys
`backbone.vit.*`, `norm.*` and `classifier.*`, so they must stay exactly as they are here.
"""

import torch
from torch import nn

DEFAULT_VIT = "vit_tiny_patch16_224"


class ViTTinyFER(nn.Module):
    """timm ViT (class-token features) -> LayerNorm -> Linear(num_classes); returns logits.

    `model_name` may be any timm ViT (e.g. vit_base_patch16_224); the head follows its embed dim.
    `timm_kwargs` (e.g. img_size, patch_size, depth) override the timm model's defaults.
    Weights are never downloaded here: they come from a checkpoint loaded afterwards.
    """

    def __init__(self, model_name: str = DEFAULT_VIT, num_classes: int = 7, **timm_kwargs) -> None:
        import timm  # here, not at module level: timm costs ~2 s of start-up (torchvision, torch._dynamo)

        super().__init__()
        self.model_name = model_name
        # A bare container so the timm model's keys read `backbone.vit.*`, as in the seed checkpoint.
        self.backbone = nn.Module()
        self.backbone.vit = timm.create_model(
            model_name, pretrained=False, num_classes=0, global_pool="token", **timm_kwargs
        )
        embed_dim = self.backbone.vit.num_features
        self.norm = nn.LayerNorm(embed_dim)
        self.classifier = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(self.backbone.vit(x)))
