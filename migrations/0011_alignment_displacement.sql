-- 0011_alignment_displacement: the non-rigid part of a section's registration, and where an
-- alignment came from. See docs/atlas.md ("Registration") and ishwh/atlas/nonrigid.py.
--
-- displacement = a coarse grid (disp_rows x disp_cols control points) of 2-D displacements
-- (dx, dy) in pixels of the full-size section image, row-major, (dx, dy) innermost; NULL =
-- affine only (method without "+dis-flow-grid", or an alignment made before this migration).
-- The field over an image of any size is the grid resized bicubically to that size (values
-- scaled with the image); image pixel p shows slice point A^-1 (p + u(p)), A = affine.
-- 6 x 6 x 2 floats = 288 bytes per section.
alter table section_alignments add column displacement float[];
alter table section_alignments add column disp_rows integer;
alter table section_alignments add column disp_cols integer;

-- The three voxel spacings (µm; axes 0, 1, 2) of a stage's reference when known (Allen's
-- embryo annotations are 16 x 16 x 20 µm); spacing_um stays the first. Allen's alignment
-- records are in µm, so turning them into slice placements needs all three.
alter table reference_atlases add column spacing_xyz_um double[];
