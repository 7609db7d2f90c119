"""Camera capture, motion gating, ONNX detection, tracking and zones (no rules, no I/O beyond the cameras).

- `capture`: RTSP, HTTP/MJPEG and files through OpenCV's FFmpeg backend, a reader thread per camera,
  reconnect with backoff, `detect.fps` frames per second scaled to the detect size.
- `motion`: a running-average background at low resolution; motion masks.
- `detect`: onnxruntime on the CPU; YOLOv8/11, YOLOv5, end-to-end, TF OD SSD and NanoDet layouts; letterbox,
  NMS, filters, object masks. The shipped model is `models/nanodet-coco.onnx` (see its README).
- `tracker`: IoU tracking with stable ids, stationary objects, zones by bottom centre with inertia.
- `pipeline`: one camera's motion -> gated detection -> tracking, as a synchronous `process(frame)`.
- `snapshots`: JPEGs of event frames with the box drawn, retention by count and age.

edge/vision.py runs it in the daemon. The site file's section (all optional but `cameras`):

```yaml
vision:
  model: {threads: 2}                  # path: my.onnx (relative to the site file), sha256, layout, iou
  objects:
    track: [person, car, truck, bus, motorcycle, bicycle]
    filters: {person: {min_score: 0.4, min_area: 400}}
  motion: {threshold: 25, contour_area: 12, frame_height: 120, recheck_s: 10}
  snapshots: {keep: 200, max_age_days: 7}
  cameras:
    - id: gate-cam
      url: rtsp://user:pass@192.168.1.20:554/sub   # a sub-stream for detection
      detect: {width: 640, height: 360, fps: 5}    # zones and masks are in these pixels
      zones:
        - {id: fire-lane, points: [[0, 250], [300, 250], [300, 360], [0, 360]], objects: [car, truck], inertia: 3}
      motion_masks: [[[0, 0], [640, 0], [640, 30], [0, 30]]]   # the timestamp overlay
```
"""
