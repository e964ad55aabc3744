import gymnasium as gym
import mujoco

from aligniql.video import _follow_the_agent


def test_locomotion_replays_follow_the_agent():
    env = gym.make("Hopper-v5", render_mode="rgb_array")
    env.reset(seed=0)
    _follow_the_agent(env)
    model = env.unwrapped.model
    assert env.unwrapped.mujoco_renderer.camera_id == mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    env.close()


def test_envs_without_a_track_camera_keep_their_view():
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    env = gym.make("PointMaze_UMaze-v3", render_mode="rgb_array")
    env.reset(seed=0)
    renderer = env.unwrapped.point_env.mujoco_renderer  # PointMaze renders through its inner point env
    before = renderer.camera_id
    _follow_the_agent(env)
    after = renderer.camera_id
    assert before == after
    env.close()
