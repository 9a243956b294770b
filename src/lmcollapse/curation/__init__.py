"""Curation of a generated corpus before it joins the training data (issue 13): the paper's
remedy, quality over quantity. `scores` scores stories from their tokens; `rules` chooses
which a filter keeps."""
