"""Replay videos of one evaluation episode, rendered headless; a failure only warns."""

from __future__ import annotations

import ctypes.util
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

MAX_FPS = 30  # frames are subsampled to at most this rate: MuJoCo renders at 67-125 fps


def configure_headless_gl() -> None:
    """Choose a headless OpenGL backend for MuJoCo unless ``MUJOCO_GL`` is set: EGL, else OSMesa, whichever
    library exists. mujoco binds the backend when it is imported, so this must run before that; with the
    variable unset it would pick GLFW, which needs a display."""
    if "MUJOCO_GL" in os.environ:
        return
    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = backend
            return


def record_episode(spec: Any, policy: Any, path: str | os.PathLike, *, seed: int, max_episode_steps: int | None = None,
                   expected_return: float | None = None) -> str | None:
    """Replay the episode with seed ``seed`` in a fresh ``render_mode="rgb_array"`` env and write it to ``path``.

    Args:
        spec: the env's ``EnvSpec``.
        policy: ``policy(batched_obs, [generator]) -> (1, act_dim) actions``, as evaluation acts.
        path: ``.mp4`` (needs ``imageio[ffmpeg]``; falls back to ``.gif``) or ``.gif``.
        seed: reset seed and action generator seed of the episode.
        max_episode_steps: time limit, as in the evaluation.
        expected_return: the evaluated episode's return; a different replay return only warns.

    Returns:
        The path written, or ``None`` (with a warning) when rendering or writing failed.
    """
    try:
        if spec is None:
            raise ValueError("the env has no spec to re-create it with render_mode='rgb_array'")
        return _record(spec, policy, Path(path), seed, max_episode_steps, expected_return)
    except Exception as e:  # noqa: BLE001 - a video must never fail an evaluation
        warnings.warn(f"replay video not written ({type(e).__name__}: {e}). Headless rendering needs EGL "
                      f"(apt-get install libegl1) or OSMesa (libosmesa6) and MUJOCO_GL={os.environ.get('MUJOCO_GL')}"
                      " set before mujoco is imported; evaluation results are unaffected", stacklevel=3)
        return None


def _follow_the_agent(env: Any) -> None:
    """Render locomotion envs through their ``track`` camera: the default free camera stays put (mujoco 4
    ignores ``trackbodyid`` for it) and the hopper leaves the frame. Envs without one keep their view."""
    unwrapped = env.unwrapped
    renderer, model = getattr(unwrapped, "mujoco_renderer", None), getattr(unwrapped, "model", None)
    if renderer is None or model is None or getattr(renderer, "camera_id", None) not in (None, -1):
        return
    import mujoco

    camera = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    if camera >= 0:
        renderer.camera_id = camera


def _view_the_maze(env: Any) -> bool:
    """Render gymnasium-robotics mazes (AntMaze, PointMaze) from straight above, the whole maze in view, so the
    agent and the red goal sphere stay in the frame all episode. Their default view is a close free camera
    (AntMaze: 4 units behind the ant, inside a wall). Returns whether the env is such a maze."""
    unwrapped = env.unwrapped
    maze = getattr(unwrapped, "maze", None)
    if maze is None or not hasattr(maze, "maze_size_scaling"):
        return False
    # the maze env wraps a MuJoCo env (ant_env, point_env) that owns the renderer
    inner = next((v for v in vars(unwrapped).values() if hasattr(v, "mujoco_renderer")), None)
    renderer = getattr(inner, "mujoco_renderer", None)
    if renderer is None or getattr(renderer, "camera_id", None) not in (None, -1):
        return True  # a camera chosen by the caller (camera_id / camera_name) is kept
    extent = max(maze.map_width, maze.map_length) * maze.maze_size_scaling
    fovy = float(inner.model.vis.global_.fovy)  # the free camera's vertical field of view, degrees
    distance = 1.1 * (extent / 2) / np.tan(np.radians(fovy) / 2)  # 10 % margin: wall tops sit nearer the lens
    renderer.camera_id = -1
    # maze coordinates are centred on the origin; azimuth 90 puts +x to the right and +y up in the image
    renderer.default_cam_config = {"lookat": np.zeros(3), "distance": distance, "elevation": -90.0,
                                   "azimuth": 90.0, "trackbodyid": -1}
    return True


def _record(spec: Any, policy: Any, path: Path, seed: int, max_steps: int | None,
            expected_return: float | None) -> str:
    import gymnasium as gym

    env = gym.make(spec, render_mode="rgb_array", max_episode_steps=max_steps)
    writer = None
    try:
        fps = float(env.metadata.get("render_fps") or MAX_FPS)
        stride = max(1, round(fps / MAX_FPS))
        obs, _ = env.reset(seed=seed)
        if not _view_the_maze(env):
            _follow_the_agent(env)
        first = env.render()  # without a GL backend this fails here, before a file is opened
        writer, path = _open_writer(path, fps / stride)
        writer.append_data(first)
        generator = torch.Generator().manual_seed(seed)
        total, steps, done = 0.0, 0, False
        while not done:
            action = policy(_batch1(obs), [generator])[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total, steps = total + float(reward), steps + 1
            done = terminated or truncated or (max_steps is not None and steps >= max_steps)
            if steps % stride == 0 or done:
                writer.append_data(env.render())
    finally:
        env.close()
        if writer is not None:
            writer.close()
    if expected_return is not None and not np.isclose(total, expected_return, rtol=1e-6, atol=1e-6):
        warnings.warn(f"the replay's return {total:.3f} differs from the evaluated episode's {expected_return:.3f}; "
                      "the env is not deterministic under reset(seed=...)", stacklevel=4)
    return str(path)


def _batch1(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: np.asarray(v)[None] for k, v in obs.items()}
    return np.asarray(obs)[None]


def _open_writer(path: Path, fps: float) -> tuple[Any, Path]:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() != ".gif":
        try:
            return imageio.get_writer(path, fps=fps, macro_block_size=1), path
        except Exception as e:  # noqa: BLE001 - no ffmpeg plugin: fall back to GIF
            gif = path.with_suffix(".gif")
            warnings.warn(f"cannot write {path.name} ({type(e).__name__}: {e}); writing {gif.name} instead "
                          "(pip install 'aligniql[video]' for mp4)", stacklevel=5)
            path = gif
    return imageio.get_writer(path, mode="I", duration=1000 / fps, loop=0), path
