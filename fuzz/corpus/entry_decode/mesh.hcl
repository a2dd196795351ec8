Kind = "mesh"
HTTP { Incoming { RequestNormalization { MergeSlashes = true PathWithEscapedSlashesAction = "UNESCAPE_AND_FORWARD" } } }
