"""Framework adapters (optional extras): a LangChain retriever (`langchain.py`, `pip install 'splade-os[langchain]'`)
and a LlamaIndex retriever with sparse embedding functions (`llamaindex.py`, `pip install 'splade-os[llamaindex]'`)."""
