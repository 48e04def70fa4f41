"""Parameter sweeps and global sensitivity: designs over behavioural and scenario parameters,
run as blocks of paths (in-process or on Dask), stored in Zarr, analysed with Sobol indices.

Import from the submodules (`oreflow.sweep.design`, `.run`, `.store`, `.sensitivity`,
`.report`): this package face stays empty so that `oreflow --help` never imports Dask, Zarr
or SALib.
"""
