"""Activities an association plans and holds (5.29会员活动日, 健康大讲堂, 义诊 …)."""
