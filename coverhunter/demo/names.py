"""Names the demo's parameters are checked against, kept free of heavy imports."""

RESERVED_COLLECTION = "bach"   # held out of every catalogue for an independent evaluation
SOUNDFONT_NAMES = ("timgm6mb", "fluidr3mono")   # the keys of demo.render.SOUNDFONTS
