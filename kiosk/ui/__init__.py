"""The touchscreen: the only package that imports Kivy.

Call :func:`kiosk.ui.boot.configure` before importing anything else here.
"""
