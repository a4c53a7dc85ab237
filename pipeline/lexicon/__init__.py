"""The pronunciation lexicon: respellings sent to the voice in place of what the book says (entries),
its interchange with W3C PLS files (pls), and the words worth an entry (words)."""
