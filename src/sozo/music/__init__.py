"""Music as notes: the Piece/Note types every music family composes, and writing them out."""
from .notes import FORMATS, Note, Piece, check_music_path, read_piece, render_audio, roll_image, write_piece

__all__ = ["FORMATS", "Note", "Piece", "check_music_path", "read_piece", "render_audio", "roll_image", "write_piece"]
