"""Export formats, one file each (`onnx`, `engine`); `prunekit.deploy.base` imports and registers them."""
