"""datakit: public medical sources -> deduplicated, bilingual VQA shards in Megatron-Energon format.

Pipeline: source readers (``datakit.sources``) discover ``RawRecord``s in each dataset's released
layout and load them into ``LoadedRecord``s; converters (``datakit.converters``) turn a loaded record
into bilingual ``Sample``s; the build (``datakit.build``) splits, orders and writes them as
byte-reproducible Energon WebDataset shards with a Parquet manifest that accounts for every input.
"""

__version__ = "0.1.0"
