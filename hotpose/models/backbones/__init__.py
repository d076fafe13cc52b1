"""One file per backbone family; each class implements :class:`hotpose.models.backbones.base.Backbone`."""
