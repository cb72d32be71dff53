"""Atlas-aware features: reference atlases, registration of sections to them, and features
pooled inside each structure's projected mask (see docs/atlas.md)."""
