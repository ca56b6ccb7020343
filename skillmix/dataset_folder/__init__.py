"""skillmix.dataset_folder: the dataset folder that ``skillmix dataset`` writes and everything else reads.

The build (:mod:`skillmix.pipelines`), the release (:mod:`skillmix.release`), the review
(:mod:`skillmix.review`) and the training (:mod:`skillmix.training`) all meet at this folder, so its layout
is named once, written by one writer and read by one reader::

    OUT/
      README.md                         card with the `configs:` that `load_dataset(OUT, "k3")` reads
      manifest.json                     config, seeds, split hashes, versions, counts, tokens, cost, time
      k3/train-00000-of-00001.parquet   kept (full-mark) rows, one config per k
      surplus/, rejected/, failed/      rows kept beyond a target, graded rows that missed a point, failures
      .skillmix/                        run state: run record, request cache, lock, staging of a swap

* :mod:`~skillmix.dataset_folder.layout`: the names above, the config names, the failures count, and the
  reader: :func:`read_dataset_folder`, the manifest and the rows of a folder (:class:`DatasetFolder`);
* :mod:`~skillmix.dataset_folder.schema`: the Arrow schema of every data config, writing configs as Parquet;
* :mod:`~skillmix.dataset_folder.writer`: :class:`OutputFolder`, a folder claimed by one run (a dataset or
  an evaluation) and replaced whole.

Nothing is imported here: import the module you need. (The writer stages a build through
:mod:`skillmix.pipelines`, whose modules import the layout and the schema: a re-export here would close
that loop into an import circle.)
"""
